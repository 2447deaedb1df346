"""What the CLI's commands do, callable from Python: each module takes paths and options and
returns results; the CLI only parses options and prints."""
