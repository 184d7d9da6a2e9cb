"""Calls into libvlfoo.so (framework layer) through the extension (app layer)."""

import json
import sys

import vl_localext

print(
    json.dumps(
        {
            "answer": vl_localext.answer(),
            "origin": vl_localext.origin(),
            "loaded": vl_localext.loaded_libraries(),
            "prefix": sys.prefix,
        }
    )
)
