"""The medchat benchmark (``make bench``): not a test; see bench/README.md."""
