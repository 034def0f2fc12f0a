"""`pvpass verify`: prove, by emulation, the patches an object or program holds."""
