GREETING = "hello from helper"
