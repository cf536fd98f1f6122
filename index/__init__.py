"""Gallery features of pose-normalized images in a FAISS index (§4.1.2)."""
