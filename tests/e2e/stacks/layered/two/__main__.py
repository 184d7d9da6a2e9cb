"""App two: a package launch module with a support module."""

import importlib.util
import json

import helper
import vl_alpha
import vl_epsilon
import vl_zeta

print(
    json.dumps(
        {
            "helper": helper.__file__,
            "vl_alpha": vl_alpha.__file__,
            "vl_epsilon": vl_epsilon.__file__,
            "vl_zeta": vl_zeta.__file__,
            # framework-left is not below app-two: its packages must not be visible
            "vl_gamma_visible": importlib.util.find_spec("vl_gamma") is not None,
        }
    )
)
