package bind

// LinkChange is a NIC appearing, going away, or turning up or down, as a
// LinkWatcher saw it.
type LinkChange struct {
	Name string
	// Before and After are the NIC's state either side of the change;
	// Existed and Exists say whether there was a NIC of that name.
	Before, After   Link
	Existed, Exists bool
}
