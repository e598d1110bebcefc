"""Where instances run: local processes now; the same seam takes Ray actors later."""
