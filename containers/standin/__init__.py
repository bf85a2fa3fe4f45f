"""Local stand-in for the vendor base images, so the project images build and run without nvcr.io or AscendHub."""
