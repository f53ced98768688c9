pytest_plugins = ["tests.modal_fixtures", "tests.isolation"]
