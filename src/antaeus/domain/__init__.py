"""Pure billing domain: money, customers, invoices and their state machine. No I/O."""
