"""Container images and the launch plan shared by tasks.py and the image entrypoint."""
