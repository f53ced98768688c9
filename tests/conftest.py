pytest_plugins = ["tests.modal_fixtures", "tests.isolation", "tests.snapshot_fixtures"]
