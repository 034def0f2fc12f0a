"""`pvpass bench`: what each site convention and each patch costs, measured
on this CPU with a harness built by pvpass itself (build), run once per
patch mode (measure), the callers' code read from the object (callers), and
rendered as text, JSON, CSV (report) and a plot (plot)."""
