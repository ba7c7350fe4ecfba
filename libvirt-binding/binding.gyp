{
  "targets": [
    {
      "target_name": "binding",
      "sources": ["src/runtime.c", "src/eventloop.c", "src/overrides.c", "generated/functions.c"],
      "cflags": ["-Wall", "-Wno-unused-function", "<!@(pkg-config --cflags libvirt)"],
      "libraries": ["<!@(pkg-config --libs libvirt)"]
    }
  ]
}
