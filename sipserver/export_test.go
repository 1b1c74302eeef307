package sipserver

// Hooks for the black-box tests in package sipserver_test.

// SweepNow runs the periodic sweep once (the ticker's work).
func SweepNow(s *Server) { s.sweep() }

// DialogCount is the number of dialogs remembered.
func DialogCount(s *Server) int { return s.dialogs.len() }

// MetricsObserver counts one REGISTER final response of a code, as the
// metered transaction does.
func MetricsObserver() func(code int) {
	m, i := theMetrics(), methodIndex("REGISTER")
	return func(code int) { m.transaction(i, code) }
}

// DirectorySubscriptions counts the live directory's subscriptions.
func DirectorySubscriptions(s *Server) int { return s.dir.subscriptions() }
