"""Front end: preprocess, slice, parse (pycparser + lark), and build the
site inventory (ops, backends, sites)."""
