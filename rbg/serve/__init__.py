"""`rbg serve`: queries over HTTP and a page to make them, the model and index loaded once."""
