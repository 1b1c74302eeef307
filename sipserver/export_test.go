package sipserver

// Hooks for the black-box tests in package sipserver_test.

// SweepNow runs the periodic sweep once (the ticker's work).
func SweepNow(s *Server) { s.sweep() }

// DialogCount is the number of dialogs remembered.
func DialogCount(s *Server) int { return s.dialogs.len() }

// DirectorySubscriptions counts the live directory's subscriptions.
func DirectorySubscriptions(s *Server) int { return s.dir.subscriptions() }
