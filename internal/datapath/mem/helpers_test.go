package mem

import "github.com/midonet/midonet/internal/datapath/engine"

func engineConfig(queueLen int) engine.Config { return engine.Config{UpcallQueueLen: queueLen} }
