"""Local fakes of outside services (exchanges, Stripe) speaking their wire formats."""
