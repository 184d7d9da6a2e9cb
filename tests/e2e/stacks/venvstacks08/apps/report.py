"""App `report` (Python 3.11): where each module came from, as JSON."""

import json
import sys

import aa_helper
import vl_alpha
import vl_beta
import vl_gamma
import vl_tool
import zz_tools

print(json.dumps(aa_helper.describe(sys, [vl_alpha, vl_beta, vl_gamma, vl_tool, zz_tools])))
