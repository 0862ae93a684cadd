"""VoIP capture: the passive SIP/RTP tap and the SIPREC recorder."""
