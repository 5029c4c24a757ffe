"""The `vistok` command line: thin modules over the library's APIs, one a command."""
