import AutomateCLI

await AutomateCommand.runCLI()
