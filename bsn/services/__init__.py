"""Actions of the service: one function per action, called from REST, sockets, jobs and the CLI."""
