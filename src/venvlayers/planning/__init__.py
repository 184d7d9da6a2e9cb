"""Planning: from a spec and its locks to the work of build and publish."""

from __future__ import annotations
