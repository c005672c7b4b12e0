"""The ``facealign`` command line: :mod:`.main` runs one module per command; :mod:`.flags` holds the shared flags."""
