"""The ``axcnn`` command line: one module per subcommand; handlers only parse, call, report."""
