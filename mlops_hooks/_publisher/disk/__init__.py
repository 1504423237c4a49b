"""Runs kept on disk: the mode setting, the run directories, and the spill/offline writers."""
