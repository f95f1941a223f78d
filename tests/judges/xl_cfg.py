"""Reads an xl domain configuration with libxlutil, the parser `xl create` uses, and
prints the settings named on the command line as JSON: a string, a list of strings,
or null when the file does not set it. Exits 1, with libxlutil's complaint on
stderr, when the file does not parse.

usage: python3 xl_cfg.py FILE NAME...
"""
import ctypes
import json
import sys

lib = ctypes.CDLL("libxlutil.so.4.17")
libc = ctypes.CDLL(None)
libc.fdopen.restype = ctypes.c_void_p
libc.fdopen.argtypes = [ctypes.c_int, ctypes.c_char_p]
lib.xlu_cfg_init.restype = ctypes.c_void_p
lib.xlu_cfg_init.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
lib.xlu_cfg_readfile.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
lib.xlu_cfg_get_string.argtypes = [
    ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int]
lib.xlu_cfg_get_list.argtypes = [
    ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p),
    ctypes.POINTER(ctypes.c_int), ctypes.c_int]
lib.xlu_cfg_get_listitem.restype = ctypes.c_char_p
lib.xlu_cfg_get_listitem.argtypes = [ctypes.c_void_p, ctypes.c_int]

path = sys.argv[1].encode()
cfg = lib.xlu_cfg_init(libc.fdopen(2, b"w"), path)
if lib.xlu_cfg_readfile(cfg, path) != 0:
    sys.exit(1)
out = {}
for name in sys.argv[2:]:
    s = ctypes.c_char_p()
    if lib.xlu_cfg_get_string(cfg, name.encode(), ctypes.byref(s), 1) == 0:
        out[name] = s.value.decode()
        continue
    items = ctypes.c_void_p()
    n = ctypes.c_int()
    if lib.xlu_cfg_get_list(cfg, name.encode(), ctypes.byref(items), ctypes.byref(n), 1) == 0:
        out[name] = [lib.xlu_cfg_get_listitem(items, i).decode() for i in range(n.value)]
        continue
    out[name] = None
print(json.dumps(out))
