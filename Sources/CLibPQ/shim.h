#ifndef AUTOMATE_CLIBPQ_SHIM_H
#define AUTOMATE_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#endif
