"""dispatcher: takes jobs from JetStream and generates them on upstream channels."""
