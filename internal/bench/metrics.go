package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// PayeeMetrics is what the payee process's /metrics said after the calls.
type PayeeMetrics struct {
	Received int64 `json:"payments_received"`
	Acked    int64 `json:"payments_acked"`
	Refused  int64 `json:"payments_refused"`
	// VerifyMeanMs and StoreMeanMs are the mean of its verification and
	// store commit histograms.
	VerifyMeanMs float64 `json:"verify_mean_ms"`
	StoreMeanMs  float64 `json:"store_commit_mean_ms"`
}

// scrapeMetrics reads the payee's /metrics.
func scrapeMetrics(ctx context.Context, url string) (PayeeMetrics, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return PayeeMetrics{}, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return PayeeMetrics{}, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return PayeeMetrics{}, fmt.Errorf("GET %s: %s", url, res.Status)
	}
	v := map[string]float64{}
	refused := 0.0
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "paysip_payee_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		f, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return PayeeMetrics{}, fmt.Errorf("metrics line %q: %w", line, err)
		}
		if strings.HasPrefix(line, "paysip_payee_payments_refused_total") {
			refused += f
		}
		v[line[:i]] = f
	}
	if err := sc.Err(); err != nil {
		return PayeeMetrics{}, err
	}
	m := PayeeMetrics{Received: int64(v["paysip_payee_payments_received_total"]), Acked: int64(v["paysip_payee_payments_acked_total"]), Refused: int64(refused)}
	if n := v["paysip_payee_payment_verification_seconds_count"]; n > 0 {
		m.VerifyMeanMs = 1000 * v["paysip_payee_payment_verification_seconds_sum"] / n
	}
	if n := v["paysip_payee_store_commit_seconds_count"]; n > 0 {
		m.StoreMeanMs = 1000 * v["paysip_payee_store_commit_seconds_sum"] / n
	}
	return m, nil
}
