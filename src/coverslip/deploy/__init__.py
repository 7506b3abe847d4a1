"""Run the application under an application server, and generate deployment configuration."""
