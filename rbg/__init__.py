"""The application: the `rbg` command line and the HTTP server, thin over the library packages.

It sits above facedata, generator, index and retrieval (and below benchmarks): it imports them, and
none of them imports it.
"""
