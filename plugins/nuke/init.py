# SamRoto Nuke plug-in: runs in every Nuke session (GUI, terminal, render).
# Puts pyzmq and msgpack for this Nuke's Python on sys.path. Any failure is printed, never
# raised: a broken install must not stop Nuke from starting.
try:
    import samroto_nuke

    samroto_nuke.add_dependency_path()
except Exception:
    import traceback

    print("SamRoto: init.py failed (the plug-in is disabled):")
    traceback.print_exc()
