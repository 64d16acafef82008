"""The change chain: an action is planned, previewed, assessed for risk, authorised, approved, leased and
run through one pipeline."""
