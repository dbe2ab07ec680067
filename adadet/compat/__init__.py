"""What stands in for parts of detectron2 that a pure-Python install lacks."""
