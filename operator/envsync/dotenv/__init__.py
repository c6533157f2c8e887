"""Reading ``.env`` files: the grammar (python-dotenv's, with strict errors and line numbers),
streaming from bytes or files in bounded memory, the lint rules, and the pools that recycle
the buffers and strings a parse churns through. Nothing here knows about AWS or Kubernetes."""
