"""One module per neuPrint API area."""
