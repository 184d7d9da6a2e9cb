"""Reports where each module it imports came from, and calls into a lower layer's C library."""

import json
import sys

import vl_alpha
import vl_beta
import vl_epsilon
import vl_fooext
import vl_foolib
import vl_gamma
import vl_pth_added  # importable only through vl-pth's .pth file in framework-base
import vl_tool

modules = [vl_alpha, vl_beta, vl_epsilon, vl_fooext, vl_foolib, vl_gamma, vl_pth_added, vl_tool]
report = {m.__name__: m.__file__ for m in modules}
report["answer"] = vl_fooext.answer()
report["args"] = sys.argv[1:]
report["prefix"] = sys.prefix
print(json.dumps(report))
sys.exit(int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 0)
