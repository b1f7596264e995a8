"""The SFT-vs-RFT advisor behind ``rft advise``."""
