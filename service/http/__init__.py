"""HTTP plumbing every resource shares: body limits, deadlines, metrics, documented errors, health."""
