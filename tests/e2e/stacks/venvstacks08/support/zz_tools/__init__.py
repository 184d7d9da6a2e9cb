"""A support package (a directory module) of app `report`."""

NAME = "zz_tools"
