#ifndef AUTOMATE_CZSTD_SHIM_H
#define AUTOMATE_CZSTD_SHIM_H
#include <zstd.h>
#endif
