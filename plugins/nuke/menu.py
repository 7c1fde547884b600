# SamRoto Nuke plug-in: runs in GUI sessions only. Adds the SamRoto node to the Nodes toolbar.
# Any failure is printed, never raised: a broken install must not stop Nuke from starting.
try:
    import samroto_nuke.host

    samroto_nuke.host.install_menus()
except Exception:
    import traceback

    print("SamRoto: menu.py failed (the SamRoto menu is missing):")
    traceback.print_exc()
