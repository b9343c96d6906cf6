"""What is specific to the moltbot gateway (ex-clawdbot, now openclaw): plain data and small functions."""
