"""The `samroto` command line: worker, matte, batch, download, bench."""
