"""The fleet: what it should be (the inventory), what it is (sources merged into snapshots), and how it
is judged against its targets (findings, reports)."""
