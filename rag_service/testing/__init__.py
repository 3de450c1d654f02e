"""Test helpers shipped with the package: fault-injecting servers, proxies, local model runners."""
