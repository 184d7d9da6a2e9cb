"""Support module shared by both apps (copied into each app layer)."""


def describe(sys, modules):  # type: ignore[no-untyped-def]
    found = {m.__name__: m.__file__ for m in modules}
    found["python"] = "%d.%d" % sys.version_info[:2]
    found["prefix"] = sys.prefix
    found["helper"] = __file__
    return found
