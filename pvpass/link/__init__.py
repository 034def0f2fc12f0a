"""Link step: read objects, find site copies, merge table and stubs."""
