package labkit

import (
	"errors"
	"fmt"
)

// ErrTODO marks a step of an exercise that the learner has not written yet.
// Every exercise template (exercise.go, built with -tags exercise) returns
// it from its unfinished functions, so that the lab's program and its
// exercise test stop with one readable sentence instead of a panic:
//
//	exercise not done yet: publishConfirmed still returns ErrTODO (wait for the broker's confirm)
//
// Exercise tests check for it with errors.Is and fail with the error's text.
var ErrTODO = errors.New("exercise not done yet")

// TODO returns ErrTODO with what is still missing, for a template's
// unfinished body: return labkit.TODO("publishConfirmed", "wait for the broker's confirm").
func TODO(function, missing string) error {
	return fmt.Errorf("%w: %s still returns ErrTODO (%s)", ErrTODO, function, missing)
}
