"""App `report312` (Python 3.12, a package launch module): where each module came from."""

import json
import sys

import aa_helper
import vl_alpha
import vl_epsilon
import vl_zeta

print(json.dumps(aa_helper.describe(sys, [vl_alpha, vl_epsilon, vl_zeta])))
