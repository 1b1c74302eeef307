package sipext_test

import (
	"fmt"

	"github.com/paysip/paysip/sipext"
)

// A caller that did not say it can pay gets 402 with the terms: the
// price it reads there is the most it agrees to pay.
func ExampleParseTerms() {
	t, err := sipext.ParseTerms("version=1;price-sat-per-min=60000;transports=datachannel,message")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(t.PriceSatPerMin, t.Transports)
	// Output: 60000 [datachannel message]
}

// A payee lists itself in the directory with its offer as Contact
// parameters of a registration at sip:directory@DOMAIN.
func ExampleOffer_ContactParams() {
	for _, p := range (sipext.Offer{PriceSatPerMin: 60000, Name: "Tutor"}).ContactParams("sip:tutor@paysip.test") {
		fmt.Printf("%s=%s\n", p[0], p[1])
	}
	// Output:
	// +paysip.aor="sip:tutor@paysip.test"
	// +paysip.price=60000
	// +paysip.name="Tutor"
}
